# Question: Are there less cars than trees?
def execute_command(image_patch):
    return len(image_patch.find("car")) < len(image_patch.find("tree"))
