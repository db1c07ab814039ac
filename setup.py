"""Packaging for dfine-mmdet (D-FINE as an MMDetection 3.x plugin).

``pip install -e .`` (editable) and ``pip install .`` (regular) both work.

The OpenMMLab stack (torch, mmcv with compiled ops, mmengine, mmdet) is
deliberately NOT listed in ``install_requires``: the same import names are
provided by different distributions (``onedl-mmcv``/``mmcv``,
``onedl-mmdetection``/``mmdet``, ...), mmcv must be compiled against the
user's torch, and pip would otherwise replace a working installation.
``tools/setup_env.sh`` installs the tested stack; README.md lists it.
"""
import os.path as osp
from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def read_version():
    namespace = {}
    with open(
            osp.join(HERE, 'dfine_mmdet', 'version.py'),
            encoding='utf-8') as f:
        exec(f.read(), namespace)
    return namespace['__version__']


def read_readme():
    path = osp.join(HERE, 'README.md')
    if not osp.exists(path):
        return ''
    with open(path, encoding='utf-8') as f:
        return f.read()


setup(
    name='dfine-mmdet',
    version=read_version(),
    description=(
        'D-FINE (Fine-grained Distribution Refinement DETR, arXiv 2410.13842) '
        'as an MMDetection 3.x plugin'),
    long_description=read_readme(),
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    python_requires='>=3.10,<3.13',
    packages=find_packages(include=['dfine_mmdet', 'dfine_mmdet.*']),
    include_package_data=False,
    # Only what the plugin imports beyond the OpenMMLab stack (see the module
    # docstring).
    install_requires=['numpy', 'scipy'],
    extras_require={
        'tests': [
            'pytest', 'pycocotools', 'onedl-mim', 'flake8==7.5.0',
            'isort==9.0.2', 'yapf==0.43.0'
        ],
        # mmdeploy is not listed: its metadata requires the 'mmengine'
        # distribution, which would replace onedl-mmengine; install it with
        # 'pip install --no-deps mmdeploy==1.3.1'.
        'deploy': ['onnx', 'onnxruntime', 'openvino'],
        'mim': ['onedl-mim'],
    },
    classifiers=[
        'License :: OSI Approved :: Apache Software License',
        'Programming Language :: Python :: 3.10',
        'Programming Language :: Python :: 3.11',
        'Programming Language :: Python :: 3.12',
        'Topic :: Scientific/Engineering :: Artificial Intelligence',
    ],
    zip_safe=False,
)
