using DynamicWorkers.Infrastructure.Configuration;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.Extensions.Logging;

namespace DynamicWorkers.Infrastructure.Persistence;

/// <summary>
/// Contexts of <typeparamref name="TContext"/> rented from EF Core's context pool: a disposed one is reset and kept
/// for the next message instead of built again, since each message needs a context and building a new one each time
/// (EF Core's own service scope, its change tracker) is a large share of LeaseSaga's allocation.
/// </summary>
public sealed class ContextPool<TContext>
    where TContext : DbContext
{
    readonly Func<TContext> _rent;

    ContextPool(Func<TContext> rent) => _rent = rent;

    /// <summary>A context to use and dispose; disposing it returns it to the pool.</summary>
    public TContext Rent() => _rent();

    /// <summary>
    /// A pool of <typeparamref name="TConcrete"/> (the provider's own subclass, which owns its migrations) on the
    /// configured provider, logging through <paramref name="logging"/>.
    /// </summary>
    public static ContextPool<TContext> Of<TConcrete>(DatabaseOptions options, ILoggerFactory? logging)
        where TConcrete : TContext
    {
        var builder = new DbContextOptionsBuilder<TConcrete>();
        builder.UseDynamicWorkersDatabase(options, logging);
        var factory = new PooledDbContextFactory<TConcrete>(builder.Options);
        return new(() => factory.CreateDbContext());
    }
}
