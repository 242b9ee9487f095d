# Question: Is the number of cars smaller than the number of trees on the right of a road?
def execute_command(image_patch):
    trees = image_patch.find("tree")
    roads = image_patch.find("road")
    return len(image_patch.find("car")) < len(image_patch.filter_related(trees, "is_right_of", roads))
