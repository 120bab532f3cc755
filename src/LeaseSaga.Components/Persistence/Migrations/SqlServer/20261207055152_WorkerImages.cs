using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace DynamicWorkers.LeaseSaga.Persistence.Migrations.SqlServer
{
    /// <inheritdoc />
    public partial class WorkerImages : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "IX_workers_Pool_CurrentState",
                table: "workers");

            migrationBuilder.AddColumn<string>(
                name: "Image",
                table: "workers",
                type: "nvarchar(512)",
                maxLength: 512,
                nullable: false,
                defaultValue: "");

            migrationBuilder.AddColumn<string>(
                name: "ConfiguredImage",
                table: "pools",
                type: "nvarchar(512)",
                maxLength: 512,
                nullable: false,
                defaultValue: "");

            migrationBuilder.AddColumn<string>(
                name: "Image",
                table: "pools",
                type: "nvarchar(512)",
                maxLength: 512,
                nullable: false,
                defaultValue: "");

            migrationBuilder.CreateIndex(
                name: "IX_workers_Pool_CurrentState_Image",
                table: "workers",
                columns: new[] { "Pool", "CurrentState", "Image" });
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "IX_workers_Pool_CurrentState_Image",
                table: "workers");

            migrationBuilder.DropColumn(
                name: "Image",
                table: "workers");

            migrationBuilder.DropColumn(
                name: "ConfiguredImage",
                table: "pools");

            migrationBuilder.DropColumn(
                name: "Image",
                table: "pools");

            migrationBuilder.CreateIndex(
                name: "IX_workers_Pool_CurrentState",
                table: "workers",
                columns: new[] { "Pool", "CurrentState" });
        }
    }
}
