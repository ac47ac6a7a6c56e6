# The BreeBoost application image: every `breeboost` subcommand (worker, simulate, train, ...).
#   docker build -t breeboost .        docker run --rm breeboost --help
# docker-compose.yml runs the worker, the incident agent, the simulator and training from it.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# Metadata first, then the packages (the list in setup.cfg [options.packages.find]).
COPY pyproject.toml setup.cfg README.md ./
COPY breeboost ./breeboost
COPY streams ./streams
COPY models ./models
COPY detectors ./detectors
COPY incident ./incident
COPY simulator ./simulator

# A non-root user. /models (the shared model volume) and /var/lib/breeboost (the incident agent's state
# and incident log) are owned by that user, so fresh named volumes mounted there inherit the ownership.
RUN pip install . \
 && useradd --create-home --uid 10001 breeboost \
 && mkdir -p /models /var/lib/breeboost \
 && chown breeboost:breeboost /models /var/lib/breeboost

USER breeboost
WORKDIR /home/breeboost

# Prometheus metrics (BREEBOOST_METRICS_PORT; the compose file gives the incident agent 9465).
EXPOSE 9464 9465

ENTRYPOINT ["breeboost"]
CMD ["--help"]
