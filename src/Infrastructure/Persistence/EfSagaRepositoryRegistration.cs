using MassTransit;
using MassTransit.Configuration;
using MassTransit.Saga;
using Microsoft.EntityFrameworkCore;

namespace DynamicWorkers.Infrastructure.Persistence;

public static class EfSagaRepositoryRegistration
{
    /// <summary>
    /// Persists the saga in <typeparamref name="TDbContext"/> (registered scoped with AddDbContext). The saga
    /// type must be mapped with <see cref="SagaModelBuilderExtensions.MapSaga{TSaga}"/> so its version is a
    /// concurrency token.
    /// </summary>
    public static ISagaRegistrationConfigurator<TSaga> EfCoreRepository<TSaga, TDbContext>(this ISagaRegistrationConfigurator<TSaga> configurator)
        where TSaga : class, ISagaVersion
        where TDbContext : DbContext
    {
        configurator.Repository(r =>
        {
            // Load and query first: RegisterSagaRepository fills any still-missing one with a "not supported" stub.
            r.RegisterLoadSagaRepository<TSaga, EfSagaRepositoryContextFactory<TSaga, TDbContext>>();
            r.RegisterQuerySagaRepository<TSaga, EfSagaRepositoryContextFactory<TSaga, TDbContext>>();
            r.RegisterSagaRepository<TSaga, DbContext, SagaConsumeContextFactory<DbContext, TSaga>,
                EfSagaRepositoryContextFactory<TSaga, TDbContext>>();
        });
        return configurator;
    }
}
