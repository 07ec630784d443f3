# LoRA from Scratch in a container: the fallback for a laptop whose install fails, and the safe way to grade
# untrusted submissions (docs/INSTRUCTOR.md). CPU-only PyTorch of the pinned version; JupyterLab on port 8888.
#   docker build -t lora-from-scratch .
#   docker run --rm -p 8888:8888 lora-from-scratch      # then open the http://127.0.0.1:8888/lab?token=... it prints
FROM python:3.11-slim
WORKDIR /course
COPY constraints.txt ./
RUN python -m pip install --no-cache-dir torch==2.14.1 --index-url https://download.pytorch.org/whl/cpu
COPY . .
RUN python -m pip install --no-cache-dir -c constraints.txt -e ".[lab]" && python -m lora_scratch.doctor --no-gloo
EXPOSE 8888
CMD ["jupyter", "lab", "--ip=0.0.0.0", "--port=8888", "--no-browser", "--allow-root", "notebooks/00_start_here.ipynb"]
