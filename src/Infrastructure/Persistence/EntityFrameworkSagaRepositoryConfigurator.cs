using MassTransit;
using MassTransit.Configuration;
using MassTransit.Saga;
using Microsoft.EntityFrameworkCore;

namespace DynamicWorkers.Infrastructure.Persistence;

/// <summary>
/// The options of <see cref="EntityFrameworkSagaRepositoryRegistrationExtensions.EntityFrameworkRepository{TSaga}"/>.
/// </summary>
public interface IEntityFrameworkSagaRepositoryConfigurator<TSaga>
    where TSaga : class, ISagaVersion
{
    /// <summary>Only <see cref="ConcurrencyMode.Optimistic"/> is implemented (MassTransit's default is not).</summary>
    ConcurrencyMode ConcurrencyMode { set; }

    /// <summary>The context registered in the container (AddDbContext), resolved from each message's scope.</summary>
    void ExistingDbContext<TContext>()
        where TContext : DbContext;
}

sealed class EntityFrameworkSagaRepositoryConfigurator<TSaga> : IEntityFrameworkSagaRepositoryConfigurator<TSaga>
    where TSaga : class, ISagaVersion
{
    // MassTransit's default, kept so that a registration switched to its package means the same.
    ConcurrencyMode _concurrencyMode = ConcurrencyMode.Pessimistic;
    Action<ISagaRepositoryRegistrationConfigurator<TSaga>>? _register;

    public ConcurrencyMode ConcurrencyMode
    {
        set => _concurrencyMode = value;
    }

    public void ExistingDbContext<TContext>()
        where TContext : DbContext
    {
        // Load and query first: RegisterSagaRepository fills any still-missing one with a "not supported" stub.
        _register = r =>
        {
            r.RegisterLoadSagaRepository<TSaga, EfSagaRepositoryContextFactory<TSaga, TContext>>();
            r.RegisterQuerySagaRepository<TSaga, EfSagaRepositoryContextFactory<TSaga, TContext>>();
            r.RegisterSagaRepository<TSaga, DbContext, SagaConsumeContextFactory<DbContext, TSaga>,
                EfSagaRepositoryContextFactory<TSaga, TContext>>();
        };
    }

    public void Validate()
    {
        if (_concurrencyMode != ConcurrencyMode.Optimistic)
        {
            throw new ConfigurationException(
                $"The {typeof(TSaga).Name} repository supports only ConcurrencyMode.Optimistic (set it explicitly).");
        }

        if (_register is null)
        {
            throw new ConfigurationException(
                $"The {typeof(TSaga).Name} repository needs its DbContext: call ExistingDbContext<TContext>().");
        }
    }

    public void Register(ISagaRepositoryRegistrationConfigurator<TSaga> configurator) => _register!(configurator);
}
