from setuptools import find_packages, setup

setup(
    name="dcgan_tf",
    version="0.1.0",
    description="The Simpsons DCGAN (and the GANs it grew from) in Keras 3 / TensorFlow 2",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["dcgan_tf", "dcgan_tf.*"]),
    python_requires=">=3.9",
    install_requires=[
        "tensorflow>=2.16",
        "keras>=3.0,<4",
        "numpy",
        "pillow",
        "matplotlib",
        "absl-py",
        "tensorboard",
        "scipy",
    ],
    extras_require={"test": ["pytest>=7", "pytest-xdist>=3"]},
    entry_points={"console_scripts": ["dcgan-tf=dcgan_tf.cli:run"]},
    license="MIT",
)
