# Question: Is the number of small houses equal to the number of swimming pools?
def execute_command(image_patch):
    houses = [patch for patch in image_patch.find("house") if patch.size == "small"]
    return len(houses) == len(image_patch.find("swimming pool"))
