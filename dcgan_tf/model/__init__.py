"""The model: network pairs (nets/), the training model and its step (gan), losses, DiffAugment, latent z, the moving average of G."""
