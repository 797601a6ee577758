"""Train, sample from or export the DCGAN: `python main.py --train --crop --dataset simpsons_64`."""

from dcgan_tf.cli import run

if __name__ == "__main__":
    run()
