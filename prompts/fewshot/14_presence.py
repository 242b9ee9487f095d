# Question: Is a swimming pool present?
def execute_command(image_patch):
    return image_patch.exists("swimming pool")
