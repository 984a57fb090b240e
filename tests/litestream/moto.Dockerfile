# A local S3 (moto's server) inside the test stack's network, for Litestream's test.
FROM python:3.12-slim-bookworm
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN pip install "moto[server,s3]==5.2.5"
EXPOSE 5000
CMD ["moto_server", "-H", "0.0.0.0", "-p", "5000"]
