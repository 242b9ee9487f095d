# Question: How many large ships next to a dock are there?
def execute_command(image_patch):
    ships = [patch for patch in image_patch.find("ship") if patch.size == "large"]
    docks = image_patch.find("dock")
    return len(image_patch.filter_related(ships, "is_next_to", docks))
