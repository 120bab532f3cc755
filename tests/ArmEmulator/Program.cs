using DynamicWorkers.ArmEmulator;

// The emulator as its own process: `dotnet DynamicWorkers.ArmEmulator.dll [--port N]`. Prints one line with
// its address and certificate thumbprint (for Cloud:Azure:Endpoint and :TrustedCertificateThumbprint), then
// serves until stopped. Its state is readable at GET /emulator/state.
var port = args.Length == 2 && args[0] == "--port" && int.TryParse(args[1], out var p) ? p : 0;
await using var server = await ArmEmulatorServer.StartAsync(port);
Console.WriteLine($"ARM emulator listening on {server.Uri} certificate-sha256 {server.CertificateThumbprint}");

await server.WaitForShutdownAsync();
