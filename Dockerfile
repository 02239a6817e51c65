# hear_vec on a CUDA machine. Build:  docker build -t hear_vec .
# Run (needs the NVIDIA container toolkit on the host):
#   docker run --gpus all --rm -v $PWD/runs:/opt/hear_vec/runs hear_vec \
#       train.py --algo ppo --num-envs 4096 --device cuda --total-steps 2000000
# The torch wheel brings its own CUDA runtime libraries; the host only needs a driver.
FROM python:3.11-slim

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1

# gcc: Triton and torch.compile (Inductor) build small C launchers at run time.
# libsndfile comes inside the soundfile wheel.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential make \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/hear_vec

# Same install steps as `make test` / .ci/run: torch pinned with the matching torchaudio,
# then the package with its test and interop extras.
RUN python -m pip install --upgrade pip \
    && python -m pip install torch==2.14.1 torchaudio==2.11.0

COPY setup.py pyproject.toml README.md Makefile ./
COPY hear_vec ./hear_vec
COPY kernels ./kernels
COPY benchmarks ./benchmarks
COPY tests ./tests
COPY examples ./examples
COPY train.py infer.py ./
RUN python -m pip install -e ".[test,interop]"

ENTRYPOINT ["python"]
CMD ["train.py", "--help"]
