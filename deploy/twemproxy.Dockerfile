# Twemproxy from Debian's own nutcracker package (no third-party image).
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nutcracker \
 && rm -rf /var/lib/apt/lists/*
COPY deploy/nutcracker.yml /etc/nutcracker/nutcracker.yml
USER nobody
EXPOSE 22121
HEALTHCHECK --interval=5s --timeout=3s --retries=10 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/22121"]
# Log to stderr (docker logs): Debian's default log file is not writable by nobody.
CMD ["nutcracker", "-c", "/etc/nutcracker/nutcracker.yml", "-s", "22222", "-a", "127.0.0.1", \
     "-o", "/dev/stderr"]
