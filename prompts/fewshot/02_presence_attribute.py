# Question: Is there a large water area?
def execute_command(image_patch):
    water_areas = [patch for patch in image_patch.find("water area") if patch.size == "large"]
    return len(water_areas) > 0
