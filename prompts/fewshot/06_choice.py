# Question: Is it a rural or an urban area?
def execute_command(image_patch):
    return image_patch.best_text_match(["rural", "urban"])
