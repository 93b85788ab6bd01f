"""BratsUNet: 3D U-Net brain tumour segmentation for BraTS-style multi-modal MRI.

Pure Python (torch, MONAI, nibabel); importable with or without 3D Slicer. The command line is
``bratsunet`` (also ``python -m BratsUNetLib``).
"""

__version__ = "0.1.0"
