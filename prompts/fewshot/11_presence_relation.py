# Question: Is a tree at the top of a parking lot present?
def execute_command(image_patch):
    trees = image_patch.find("tree")
    parking_lots = image_patch.find("parking lot")
    return len(image_patch.filter_related(trees, "is_above", parking_lots)) > 0
