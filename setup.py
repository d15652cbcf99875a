"""mmdynamixer: DynaMixer vision-MLP backbones for the OpenMMLab toolboxes and timm."""
import os
import shutil
import sys
from pathlib import Path

from setuptools import find_packages, setup

ROOT = Path(__file__).resolve().parent
# What OpenMMLab packages carry in <package>/.mim: mim finds configs and tools there, mmpretrain's ModelHub the index.
MIM_FILES = ('configs', 'tools', 'model-index.yml')


def add_mim_files() -> None:
    """Put configs/, tools/ and model-index.yml into mmdynamixer/.mim: links for an editable install, copies for a
    wheel or an sdist, as the OpenMMLab packages do."""
    if {'develop', 'editable_wheel'} & set(sys.argv):
        link = True
    elif {'bdist_wheel', 'sdist', 'build', 'install'} & set(sys.argv):
        link = False
    else:
        return
    mim = ROOT / 'mmdynamixer' / '.mim'
    mim.mkdir(exist_ok=True)
    for name in MIM_FILES:
        source, target = ROOT / name, mim / name
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.is_dir():
            shutil.rmtree(target)
        if link:
            target.symlink_to(os.path.relpath(source, mim))
        elif source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns('__pycache__', '*.pyc'))
        else:
            shutil.copy2(source, target)


add_mim_files()

setup(
    name='mmdynamixer',
    version='0.1.0',
    description='DynaMixer (ICML 2022) backbones for mmpretrain, mmdet, mmsegmentation and timm',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    license_expression='Apache-2.0',
    license_files=['LICENSE', 'NOTICE'],  # NOTICE credits the authors' MIT-licensed release
    project_urls={
        'Paper': 'https://arxiv.org/abs/2201.12083',
        'Original implementation': 'https://github.com/ziyuwwang/DynaMixer',
    },
    keywords=['computer vision', 'image classification', 'object detection', 'semantic segmentation', 'MLP',
              'OpenMMLab', 'timm'],
    classifiers=[
        'Development Status :: 3 - Alpha',
        'Intended Audience :: Developers',
        'Intended Audience :: Science/Research',
        'Operating System :: POSIX :: Linux',
        'Programming Language :: Python :: 3',
        'Programming Language :: Python :: 3.11',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
        'Topic :: Scientific/Engineering :: Image Recognition',
    ],
    packages=find_packages(include=['mmdynamixer', 'mmdynamixer.*']),
    package_data={'mmdynamixer': ['.mim/model-index.yml', '.mim/configs/**/*', '.mim/tools/**/*']},
    # The only Python the stacks are tested on (tools/setup_env.sh, tools/run_tests.sh).
    python_requires='>=3.11,<3.12',
    # The model itself needs torch only. The tested range is torch 2.1 to 2.15 (requirements/stack-*.txt): the
    # oneDNN op needs torch >= 2.4 (torch.library.custom_op), weights-only checkpoint loading >= 2.6 and the ONNX
    # export >= 2.6; older torch takes F.linear, loads checkpoints in full as mmengine does, and refuses to export.
    # The registrations need the toolboxes; no extra raises the torch a user already has.
    install_requires=['torch>=2.1'],
    extras_require={
        'openmmlab': [
            'torchvision>=0.16',
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
