using DynamicWorkers.Infrastructure.Persistence;
using Microsoft.Extensions.DependencyInjection;
using static DynamicWorkers.UnitTests.InMemorySqlite;

namespace DynamicWorkers.UnitTests;

public sealed class ContextPoolTests
{
    [Fact]
    public async Task A_message_scope_s_context_goes_back_to_the_pool_and_the_next_scope_gets_it_with_nothing_tracked()
    {
        var services = new ServiceCollection();
        services.AddLogging();
        services.AddDynamicWorkersDatabase<RowsContext>(InMemorySqlite.Settings(),
            ContextPool<RowsContext>.Of<RowsContext>);
        await using var provider = services.BuildServiceProvider();

        RowsContext first;
        await using (var scope = provider.CreateAsyncScope())
        {
            first = scope.ServiceProvider.GetRequiredService<RowsContext>();
            first.Attach(new Row { Id = 1 });
            Assert.Same(first, scope.ServiceProvider.GetRequiredService<RowsContext>());
        }

        await using (var scope = provider.CreateAsyncScope())
        {
            var second = scope.ServiceProvider.GetRequiredService<RowsContext>();
            Assert.Same(first, second);
            Assert.Empty(second.ChangeTracker.Entries());
        }
    }
}
