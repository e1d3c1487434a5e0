# Build stage: compile the Portuguese catalog with msgfmt (Debian's gettext),
# which the runtime image then does not need to carry.
FROM python:3.11-slim AS messages
RUN apt-get update \
    && apt-get install -y --no-install-recommends gettext \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY requirements/base.txt requirements/base.txt
RUN pip install --no-cache-dir "$(grep -i '^django==' requirements/base.txt)"
COPY locale locale
RUN django-admin compilemessages

FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=config.settings.production

WORKDIR /app
COPY requirements/base.txt requirements/base.txt
RUN pip install -r requirements/base.txt

COPY . .
COPY --from=messages /src/locale locale
# collectstatic needs settings to import; the key is thrown away with this layer.
RUN SECRET_KEY=build-only-collectstatic-key-not-used-at-runtime-000 \
    SALT_KEY=build-only-collectstatic-salt \
    python manage.py collectstatic --no-input \
    && useradd --create-home --uid 10001 app \
    && chown -R app:app /app

USER app
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
    CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4).status == 200 else 1)"
CMD ["gunicorn", "--config", "gunicorn.conf.py"]
