"""pip install of sparsett_core and sparsett_ros (the Python side, without ROS).

The ROS 2 build (colcon, ament_cmake) is CMakeLists.txt; both install the same Python packages.
"""
from setuptools import find_packages, setup

setup(
    name="sparsett_ros",
    version="0.1.0",
    description="SparseTT visual single-object tracker (PyTorch) and its ROS 2 node",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["sparsett_core", "sparsett_core.*", "sparsett_ros", "sparsett_ros.*"]),
    package_data={"sparsett_core": ["weights/*.pt", "weights/*.md"]},
    # torch is deliberately not listed: it is installed first, pinned, by scripts/setup.sh
    # (a bare "torch" requirement would pull a CUDA build of several GB).
    install_requires=["numpy>=1.26", "pyyaml>=6", "tqdm>=4.66"],
    # the ONNX Runtime backend and sparsett-export (optional: without it everything runs on torch)
    extras_require={"onnx": ["onnxruntime>=1.17", "onnx>=1.15"]},
    entry_points={
        "console_scripts": [
            "sparsett-track=sparsett_core.cli.track:main",
            "sparsett-eval=sparsett_core.cli.eval:main",
            "sparsett-train=sparsett_core.cli.train:main",
            "sparsett-export=sparsett_core.cli.export:main",
            "tracker_node=sparsett_ros.tracker_node:main",
            "bag_from_video=sparsett_ros.tools.bag_from_video:main",
            "bag_replay=sparsett_ros.tools.bag_replay:main",
            "select_target=sparsett_ros.tools.select_target:main",
        ]
    },
)
