# Shoal under Bun: a small final image, non-root, health-checked.
#   docker build -t shoal .
#   docker run -p 9000:9000 -v $PWD/config.ts:/app/config.ts:ro shoal
#   docker run -p 9000:9000 -e SHOAL_PUBLISH_TOKEN=$(openssl rand -hex 32) -e SHOAL_BROKER_URL=redis://redis:6379/0 shoal
# To bake a config in instead: FROM shoal, then COPY config.ts /app/config.ts.
#
# The config is $SHOAL_CONFIG if set, else /app/config.ts when present (mount it), else config.example.ts; SHOAL_*
# variables override it (see the README). The image sets only SHOAL_DEFAULT_HOST=0.0.0.0: a default that a config's
# own ws.host beats (as its ws.port, 9000 unless set), so a mounted config listens where it says. Without a config
# of your own and without SHOAL_PUBLISH_TOKEN the container exits 1 at once: the example's publish token
# ("change-me", published in the README) is refused on 0.0.0.0, and the message says what to set.

FROM node:20-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# Production dependencies only; the runtime is the final image's Bun, so no install scripts are needed.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM oven/bun:1.4.5-slim
WORKDIR /app
ENV NODE_ENV=production \
    SHOAL_DEFAULT_HOST=0.0.0.0
COPY --from=deps /app/node_modules ./node_modules
COPY package.json main.ts config.example.ts ./
COPY src ./src
USER bun
# The config's ws.port; publish another one with -p HOST:CONTAINER as usual.
EXPOSE 9000
# The health check loads the config exactly as the start did (same file, same SHOAL_* variables) and GETs /healthz
# on its listener: https when ws.tls is set (certificate not verified: liveness, not identity), 127.0.0.1 for 0.0.0.0.
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
  CMD ["bun", "run", "main.ts", "--healthcheck"]
ENTRYPOINT ["bun", "run", "main.ts"]
