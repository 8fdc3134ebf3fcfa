"""Search strategies: grid (the ground truth) and Mordal (the product)."""
