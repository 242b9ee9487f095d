# Question: Is the largest farmland next to a water area?
def execute_command(image_patch):
    farmlands = image_patch.find("farmland")
    if not farmlands:
        return False
    largest = max(farmlands, key=lambda patch: patch.area_m2)
    return any(largest.is_next_to(water) for water in image_patch.find("water area"))
