using MassTransit;

namespace DynamicWorkers.Infrastructure.Persistence;

/// <summary>
/// The saga repository registration of MassTransit.EntityFrameworkCore, with the same shape, so switching to that
/// package changes only the using directive.
/// </summary>
public static class EntityFrameworkSagaRepositoryRegistrationExtensions
{
    /// <summary>
    /// Persists the saga in an EF Core context: <c>r.ConcurrencyMode = ConcurrencyMode.Optimistic;
    /// r.ExistingDbContext&lt;TDbContext&gt;();</c>. The saga type must be mapped with
    /// <see cref="SagaModelBuilderExtensions.MapSaga{TSaga}"/> so its version is a concurrency token.
    /// </summary>
    public static ISagaRegistrationConfigurator<TSaga> EntityFrameworkRepository<TSaga>(
        this ISagaRegistrationConfigurator<TSaga> configurator,
        Action<IEntityFrameworkSagaRepositoryConfigurator<TSaga>> configure)
        where TSaga : class, ISagaVersion
    {
        var repository = new EntityFrameworkSagaRepositoryConfigurator<TSaga>();
        configure(repository);
        repository.Validate();
        configurator.Repository(repository.Register);
        return configurator;
    }
}
