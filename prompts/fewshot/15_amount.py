# Question: What is the amount of tennis courts in the image?
def execute_command(image_patch):
    return len(image_patch.find("tennis court"))
