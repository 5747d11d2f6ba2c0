# maildrill in a container: the fake MTA fleet (default command), and the image the compose file's Locust
# master/workers and reference-mailer SUT run from.
FROM python:3.11-slim
WORKDIR /opt/maildrill
COPY pyproject.toml README.md ./
COPY harness ./harness
COPY fake_mta ./fake_mta
COPY maildrill ./maildrill
COPY examples ./examples
COPY scenarios ./scenarios
COPY compose ./compose
RUN pip install --no-cache-dir . \
    && useradd --create-home --uid 10001 maildrill
USER maildrill
EXPOSE 2525 2526 8025
# inside a container network the fleet must bind 0.0.0.0: --allow-remote, and the control API then wants a token
CMD ["maildrill", "mta", "--config", "/opt/maildrill/compose/fleet.yaml", "--allow-remote", "--token", "drill-token"]
