export const runtime = 'edge';
export const preferredRegion = 'fra1';

export default function DashboardLayout({ children }: { children: React.ReactNode }) {
  return <section className="dashboard">{children}</section>;
}
