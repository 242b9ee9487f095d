# Question: How many residential buildings are there?
def execute_command(image_patch):
    return len(image_patch.find("residential building"))
