# Question: What is the area covered by small commercial buildings?
def execute_command(image_patch):
    buildings = [patch for patch in image_patch.find("commercial building") if patch.size == "small"]
    return sum(patch.area_m2 for patch in buildings)
