"""Quality: the FID Inception network, FID and KID, and the evaluator used by --eval and --eval_freq."""
