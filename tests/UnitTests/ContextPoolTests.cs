using DynamicWorkers.Infrastructure.Persistence;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace DynamicWorkers.UnitTests;

public sealed class ContextPoolTests
{
    sealed class Note
    {
        public int Id { get; set; }
    }

    sealed class NotesContext(DbContextOptions<NotesContext> options) : DbContext(options)
    {
        public DbSet<Note> Notes => Set<Note>();
    }

    [Fact]
    public async Task A_message_scope_s_context_goes_back_to_the_pool_and_the_next_scope_gets_it_with_nothing_tracked()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Database:Provider"] = "Sqlite",
            ["ConnectionStrings:Default"] = "Data Source=:memory:",
        }).Build();
        var services = new ServiceCollection();
        services.AddLogging();
        services.AddDynamicWorkersDatabase<NotesContext>(configuration, ContextPool<NotesContext>.Of<NotesContext>);
        await using var provider = services.BuildServiceProvider();

        NotesContext first;
        await using (var scope = provider.CreateAsyncScope())
        {
            first = scope.ServiceProvider.GetRequiredService<NotesContext>();
            first.Attach(new Note { Id = 1 });
            Assert.Same(first, scope.ServiceProvider.GetRequiredService<NotesContext>());
        }

        await using (var scope = provider.CreateAsyncScope())
        {
            var second = scope.ServiceProvider.GetRequiredService<NotesContext>();
            Assert.Same(first, second);
            Assert.Empty(second.ChangeTracker.Entries());
        }
    }
}
