namespace DynamicWorkers.Infrastructure.Scheduling;

/// <summary>Keys of the job data each scheduled message's Quartz trigger carries (stored as strings).</summary>
static class ScheduledMessageData
{
    /// <summary>The one durable job that every scheduled-message trigger fires.</summary>
    public const string JobName = "dw-send-scheduled-message";

    /// <summary>The no-op job of the tombstone a cancel leaves when it finds no trigger to remove.</summary>
    public const string TombstoneJobName = "dw-cancelled-schedule";

    public const string Destination = "Destination";
    public const string Body = "Body";
    public const string ContentType = "ContentType";
    public const string TokenId = "TokenId";
    public const string MessageId = "MessageId";
    public const string CorrelationId = "CorrelationId";
    public const string ConversationId = "ConversationId";
    public const string InitiatorId = "InitiatorId";
    public const string RequestId = "RequestId";
    public const string SourceAddress = "SourceAddress";
    public const string ResponseAddress = "ResponseAddress";
    public const string FaultAddress = "FaultAddress";
    public const string ExpirationTime = "ExpirationTime";
    public const string Headers = "HeadersAsJson";
}
