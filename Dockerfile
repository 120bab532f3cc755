# One image per deployable, chosen by a build argument:
#   docker build --build-arg PROJECT=LeaseSaga --build-arg GC_GEN0SIZE=0x1000000 -t dynamic-workers/lease-saga .
# PROJECT is one of LeaseSaga, Provisioner, Trust, Reaper, or Cli (`dw`, run with DW_ASSEMBLY=dw.dll: compose's
# broker-setup); a folder under src/. docker-compose.yml builds all five.
ARG PROJECT=LeaseSaga

FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
ARG PROJECT
WORKDIR /repo
# global.json is left out on purpose: the image's .NET 10 SDK builds the solution whatever its patch level.
COPY Directory.Build.props Directory.Build.targets Directory.Packages.props ./
COPY src/ src/
# ReadyToRun: compiled ahead of time, so a service starts without JIT-compiling MassTransit, EF Core and Quartz first.
# Framework-dependent, except LeaseSaga: self-contained with one composite image of the framework and the app (its
# project file says why); `dotnet /app/...dll` below runs it on its own runtime.
RUN dotnet publish "src/${PROJECT}/${PROJECT}.csproj" -c Release -r linux-x64 \
    -p:PublishReadyToRun=true -o /app -nologo

FROM mcr.microsoft.com/dotnet/aspnet:10.0 AS runtime
ARG PROJECT
ARG GC_GEN0SIZE=0x400000
# The aspnet image has no HTTP client; the compose health checks call /readyz with curl.
RUN apt-get update \
    && apt-get install -y --no-install-recommends curl \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app ./
# DOTNET_GCgen0size: .NET sizes the young generation from the CPU's last-level cache, about 100 MB on a host that
# reports a 260 MB L3, so each service collected only every 100 MB or so; with 4 MB the benchmark's services held 50
# to 70 MB less, at no cost in latency. LeaseSaga, which allocates about 1 MB per lease, is built with 16 MB
# (GC_GEN0SIZE, as docker-compose.yml does): half the time paused in collections, no more memory
# (docs/benchmark-rounds.md, eleventh round).
# Only an environment variable sets it.
ENV DOTNET_ENVIRONMENT=Production \
    DOTNET_GCgen0size=${GC_GEN0SIZE} \
    Http__Port=8080 \
    DW_ASSEMBLY=DynamicWorkers.${PROJECT}.dll
EXPOSE 8080
# The non-root user the .NET images ship with.
USER app
ENTRYPOINT ["sh", "-c", "exec dotnet \"/app/$DW_ASSEMBLY\" \"$@\"", "--"]
