# Question: How many buildings are on the left of a road?
def execute_command(image_patch):
    roads = image_patch.find("road")
    buildings = [patch for patch in image_patch.find("building") if any(patch.is_left_of(road) for road in roads)]
    return len(buildings)
