# Question: How many buildings are on the left of a road?
def execute_command(image_patch):
    buildings = image_patch.find("building")
    roads = image_patch.find("road")
    return len(image_patch.filter_related(buildings, "is_left_of", roads))
