"""mmdynamixer: DynaMixer vision-MLP backbones for the OpenMMLab toolboxes and timm."""
from setuptools import find_packages, setup

setup(
    name='mmdynamixer',
    version='0.1.0',
    description='DynaMixer (ICML 2022) backbones for mmpretrain, mmdet, mmsegmentation and timm',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmdynamixer', 'mmdynamixer.*']),
    python_requires='>=3.9',
    # The model itself needs torch only (>= 2.4: torch.library.custom_op, register_fake, register_autograd and
    # torch.is_autocast_enabled(device_type) in mmdynamixer/ops); the registrations need the toolboxes.
    install_requires=['torch>=2.4'],
    extras_require={
        'openmmlab': [
            # mmengine checkpoints load weights-only through torch.serialization.add_safe_globals entries of the
            # (function, name) form, which torch accepts from 2.6 (mmdynamixer/engine/serialization.py).
            'torch>=2.6',
            'torchvision>=0.15',
            # numpy 2 works for our code and for classification (tested); the detection and segmentation paths
            # (pycocotools, mmdet's and mmseg's evaluators) are tested with numpy 1 only.
            'numpy<2',
            'opencv-python<5',
            'mmengine>=0.10,<1.0',
            'mmcv>=2.0.0,<2.2.0',
            'mmpretrain>=1.2.0,<1.3',
            'mmdet>=3.3.0,<3.4',
            'mmsegmentation>=1.2.2,<1.3',
            'timm>=1.0,<1.1',
            'ftfy',
            'regex',
        ],
        # tools/demo (scikit-learn ships the digits) and tools/visualization/vis_cam.py (pytorch-grad-cam 1.5's API;
        # from 1.5.7 it requires opencv-python-headless, whose cv2 would replace opencv-python's).
        'demo': ['scikit-learn>=1.3', 'grad-cam>=1.5,<1.5.7'],
        # openmim: the tests run `mim train` as OpenMMLab users do.
        'tests': ['pytest>=7', 'hypothesis>=6.100', 'openmim>=0.3.9'],
        # tools/deployment/pytorch2onnx.py: torch's dynamo ONNX exporter and the onnxruntime check.
        'deploy': ['onnx>=1.18', 'onnxscript>=0.5', 'onnxruntime>=1.20'],
    },
)
