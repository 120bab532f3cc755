using MassTransit;

namespace DynamicWorkers.LeaseSaga;

/// <summary>
/// A step of a state machine that needs the saga only, so any event may run it; created in the consume scope with
/// its services injected.
/// </summary>
public abstract class InstanceActivity<TSaga> : IStateMachineActivity<TSaga>
    where TSaga : class, SagaStateMachineInstance
{
    public void Probe(ProbeContext context) => context.CreateScope(GetType().Name);

    public void Accept(StateMachineVisitor visitor) => visitor.Visit(this);

    public async Task Execute(BehaviorContext<TSaga> context, IBehavior<TSaga> next)
    {
        await Execute(context);
        await next.Execute(context);
    }

    public async Task Execute<T>(BehaviorContext<TSaga, T> context, IBehavior<TSaga, T> next)
        where T : class
    {
        await Execute(context);
        await next.Execute(context);
    }

    public Task Faulted<TException>(BehaviorExceptionContext<TSaga, TException> context, IBehavior<TSaga> next)
        where TException : Exception
        => next.Faulted(context);

    public Task Faulted<T, TException>(BehaviorExceptionContext<TSaga, T, TException> context, IBehavior<TSaga, T> next)
        where T : class
        where TException : Exception
        => next.Faulted(context);

    protected abstract Task Execute(BehaviorContext<TSaga> context);
}
