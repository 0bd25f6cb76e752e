# nodewarden: one image for the agent (default), the aggregator and the CLI.
# Build: docker build -t nodewarden .    (NODE_IMAGE names another Node 20 base, e.g. a local stand-in)
ARG NODE_IMAGE=node:20-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /src
# Behind a TLS-intercepting proxy, pass its CA bundle: --build-arg NODE_EXTRA_CA_CERTS=/etc/ssl/certs/...
# (a path inside the base image). Used by npm in this stage only; the runtime image does not carry it.
ARG NODE_EXTRA_CA_CERTS
# The native statx module is compiled by node-gyp: python3, make and a C compiler, if the base lacks them.
RUN if ! command -v g++ >/dev/null || ! command -v make >/dev/null || ! command -v python3 >/dev/null; then \
      apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*; \
    fi
COPY package.json package-lock.json binding.gyp tsconfig.json ./
COPY native ./native
COPY scripts/build-native.mjs ./scripts/build-native.mjs
# node-gyp builds against the headers that come with this Node (no download): node's own prefix.
RUN npm ci --no-audit --no-fund --nodedir="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
COPY protocol ./protocol
COPY agent ./agent
COPY collectors ./collectors
COPY aggregator ./aggregator
COPY cli ./cli
COPY bench ./bench
COPY web ./web
RUN npm run build && rm -rf dist/bench && npm prune --omit=dev --no-audit --no-fund && find node_modules -type d -empty -delete

FROM ${NODE_IMAGE}
WORKDIR /app
ENV NODE_ENV=production
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY --from=build /src/build/Release/nodewarden_attrs.node ./build/Release/nodewarden_attrs.node
ENTRYPOINT ["node", "/app/dist/cli/main.js"]
CMD ["agent"]
