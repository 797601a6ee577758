"""The model: network pairs (nets/), the training model and its step (gan), losses, DiffAugment (augment),
latent z, the moving average of G (ema), the convolutions' forms (conv), FLOP counts (flops) and
the sums across replicas (replicas), batch norm's fused training pass (batch_norm) and D's
spectral normalisation (spectral_norm)."""
