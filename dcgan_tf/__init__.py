"""dcgan_tf: the Simpsons DCGAN (and friends) in Keras 3 / TensorFlow 2."""

__version__ = "0.1.0"
