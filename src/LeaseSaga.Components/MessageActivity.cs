using MassTransit;

namespace DynamicWorkers.LeaseSaga;

/// <summary>
/// A step of a state machine for one message type, created in the consume scope with its services injected, so the
/// machine itself holds the flow only.
/// </summary>
public abstract class MessageActivity<TSaga, TMessage> : IStateMachineActivity<TSaga, TMessage>
    where TSaga : class, SagaStateMachineInstance
    where TMessage : class
{
    public void Probe(ProbeContext context) => context.CreateScope(GetType().Name);

    public void Accept(StateMachineVisitor visitor) => visitor.Visit(this);

    public async Task Execute(BehaviorContext<TSaga, TMessage> context, IBehavior<TSaga, TMessage> next)
    {
        await Execute(context);
        await next.Execute(context);
    }

    public Task Faulted<TException>(
        BehaviorExceptionContext<TSaga, TMessage, TException> context, IBehavior<TSaga, TMessage> next)
        where TException : Exception
        => next.Faulted(context);

    protected abstract Task Execute(BehaviorContext<TSaga, TMessage> context);
}
