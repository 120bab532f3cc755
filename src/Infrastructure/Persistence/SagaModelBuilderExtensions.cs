using MassTransit;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace DynamicWorkers.Infrastructure.Persistence;

public static class SagaModelBuilderExtensions
{
    /// <summary>
    /// Maps a saga: key = correlation id (never generated), <c>Version</c> = optimistic concurrency token.
    /// </summary>
    public static EntityTypeBuilder<TSaga> MapSaga<TSaga>(this ModelBuilder modelBuilder, string table)
        where TSaga : class, ISagaVersion
        => modelBuilder.Entity<TSaga>().MapSaga(table);

    /// <inheritdoc cref="MapSaga{TSaga}(ModelBuilder, string)"/>
    public static EntityTypeBuilder<TSaga> MapSaga<TSaga>(this EntityTypeBuilder<TSaga> entity, string table)
        where TSaga : class, ISagaVersion
    {
        entity.ToTable(table);
        entity.HasKey(x => x.CorrelationId);
        entity.Property(x => x.CorrelationId).ValueGeneratedNever();
        entity.Property(x => x.Version).IsConcurrencyToken();
        return entity;
    }
}
