"""Thunder Compute: run TANGRAM's heavy stages on a remote GPU host over SSH, with local fallback.

- `thunder.thunder_client`: the SSH client (paramiko) and the connection test.
- `tangram.execution.thunder` (not here): the executor and offload policy the runner uses.
- `thunder.worker`: what runs on the host (`python -m thunder.worker ...`).
- `thunder.bootstrap`: turns a host with only ssh and python3 into a worker.
- `thunder.jobs`: detached jobs (submit, status, fetch).
- `thunder.scorer`: where each stage should run, and why.
"""
