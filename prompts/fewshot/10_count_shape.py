# Question: What is the number of circular storage tanks?
def execute_command(image_patch):
    tanks = [patch for patch in image_patch.find("storage tank") if patch.shape == "circular"]
    return len(tanks)
