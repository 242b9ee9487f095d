# Question: Are there more roads than buildings?
def execute_command(image_patch):
    return len(image_patch.find("road")) > len(image_patch.find("building"))
