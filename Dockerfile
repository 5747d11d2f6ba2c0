# maildrill in a container: the fake MTA fleet (default command), and the image the compose file's Locust
# master/workers and reference-mailer SUT run from. The package is installed as pip users get it and the
# source tree is removed: a `maildrill/` folder in the working directory would shadow the installed package.
FROM python:3.11-slim
WORKDIR /tmp/maildrill-src
COPY pyproject.toml README.md LICENSE ./
COPY harness ./harness
COPY fake_mta ./fake_mta
COPY maildrill ./maildrill
COPY examples ./examples
COPY scenarios ./scenarios
COPY compose ./compose
# Stable paths for what compose/docker-compose.yml names, linked to the installed package's files:
#   /opt/maildrill/compose/fleet.yaml (the fleet config) and /opt/maildrill/locustfile.py (maildrill's locustfile)
RUN pip install --no-cache-dir . \
    && cd / && rm -rf /tmp/maildrill-src \
    && mkdir -p /opt/maildrill \
    && ln -s "$(python -c 'from maildrill.harness.bundled import compose_file; print(compose_file().parent)')" \
             /opt/maildrill/compose \
    && ln -s "$(python -c 'from maildrill.harness.load.process import LOCUSTFILE; print(LOCUSTFILE)')" \
             /opt/maildrill/locustfile.py \
    && test -f /opt/maildrill/compose/fleet.yaml && test -f /opt/maildrill/locustfile.py \
    && useradd --create-home --uid 10001 maildrill
WORKDIR /opt/maildrill
USER maildrill
EXPOSE 2525 2526 8025
# inside a container network the fleet must bind 0.0.0.0: --allow-remote, and the control API then wants a token
CMD ["maildrill", "mta", "--config", "/opt/maildrill/compose/fleet.yaml", "--allow-remote", "--token", "drill-token"]
